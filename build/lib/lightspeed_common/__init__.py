"""What the three lightspeed daemons have in common, and nothing only one of them needs.

The server (`lightspeed`), the collector (`collector`) and the ingest
(`ingest`) import this package and never each other; it imports none of
them (`make check` enforces both with import-linter). It holds:

- the contracts: the YAML config schema (`config`), the record kinds on disk
  (`records`), the telemetry event schema (`telemetry_schema`);
- the runtime every daemon runs on: atomic files, logging, systemd notify,
  credentials, the retry policy, the installation id, start-up checks;
- the HTTP pieces both aiohttp daemons share (`http`): middleware, metrics,
  errors as JSON, serving with readiness.
"""
