"""One-off studies, each behind one committed report."""
