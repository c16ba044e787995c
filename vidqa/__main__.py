"""`python -m vidqa` runs the CLI."""

from vidqa.cli import main

main()
