"""The cut: which span of the video to keep (music, reference, picture)."""
