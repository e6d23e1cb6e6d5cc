"""cxbackup's development tools: the vendor-cloud emulator (a test double), the local test cluster
(control plane and a real node), the demo and the CRD generator. Not part of the product or its image."""
