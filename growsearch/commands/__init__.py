"""One module per command-line command; ``growsearch.cli`` loads them lazily."""
