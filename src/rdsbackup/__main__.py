"""``python -m rdsbackup``: the same as the ``rdsbackup`` command."""

from rdsbackup.cli import main

main()
