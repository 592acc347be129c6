"""Readers for each input format, streaming source records into the lake's bronze layer."""
