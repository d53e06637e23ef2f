"""Media in: probe the files and decode their audio (the reference in a helper process)."""
