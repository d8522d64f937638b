"""`python -m gateway.cli …`: the same as the `iotgw` command."""

from gateway.cli import main

main()
