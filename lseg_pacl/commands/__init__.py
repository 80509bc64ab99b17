"""Commands: thin entry points that turn words on the command line into calls of the rooms below."""
