"""ExportJob: handler (kopf wiring and the reconcile), decisions (pure), manifests (its Jobs)."""
