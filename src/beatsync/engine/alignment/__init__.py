"""Alignment: features, coarse search, fine lock, line fits, pieces, where the music is heard."""
