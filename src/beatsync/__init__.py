"""BeatSync: replace a dance class video's live sound with the clean reference track, in sync."""

__version__ = "0.1.0"
