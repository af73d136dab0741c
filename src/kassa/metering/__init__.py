"""Metering: usage events in, exact aggregations out, fast (hourly rollups)."""
