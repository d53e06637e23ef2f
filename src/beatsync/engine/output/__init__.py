"""Output: the file (copied picture, placed audio) and the report, plot and poster."""
