"""RecordingCertificate: handler (kopf wiring and the reconcile) and decisions (pure)."""
