"""Replication operations: setup, failover, switchover, the automatic failover monitor, clone and rejoin.

`plan` holds the decisions (pure functions on a topology snapshot); each other module carries out one
operation on live servers, building on `gateway.topology` (discovery, dialect, epoch, promotion).
"""
