"""The HTTP service: ``make serve`` answers "what fruit is this?" for uploaded photos."""
