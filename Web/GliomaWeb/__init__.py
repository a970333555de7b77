"""Web twin of the Slicer modules (trame-slicer); see app.py."""
