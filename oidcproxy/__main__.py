"""`python -m oidcproxy` runs the command line."""

from oidcproxy.cli import main

raise SystemExit(main())
