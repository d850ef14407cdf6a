"""`python -m gtool`."""

from .cli import main

main()
