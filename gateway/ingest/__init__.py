"""Ingest paths: MQTT and serial, both feeding the one spool writer."""
