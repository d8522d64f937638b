"""The status of the whole chain in one model: `/api/status`, the page at `/`, and `iotgw status`.

- `model`: pure builders (inputs → the status document), tested on stored inputs;
- `activity`, `history`: bounded in-memory trackers (readings per node, pair switches, the last hour);
- `service`: gathers the inputs from a running gateway;
- `page`, `http`: the server-rendered page and its routes; `term`: the terminal view (rich); `cli`: the command.
"""
