"""The API server: queries, feedback, embedding models, telemetry; writes the records the collector ships."""
