"""Board glue: builds the iotcollector logic from a board's real parts (see micropython_board, circuitpython_board)."""
