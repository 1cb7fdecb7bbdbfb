"""``python -m mailroom_cli`` runs the ``mailroom`` command."""

from mailroom_cli.main import main

if __name__ == "__main__":
    main()
