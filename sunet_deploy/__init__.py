from .cli import say_missing_extras

say_missing_extras()  # first: an entry point missing an extra's package says so in one line
