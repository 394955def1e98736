"""The ``moderator`` command line."""
