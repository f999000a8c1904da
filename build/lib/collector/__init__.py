"""lightspeed-collector: ships the server's records to an insights-style ingress."""
