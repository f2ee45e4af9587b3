"""HTTP clients for the cluster: srebuildd, bucketd (and the shared request machinery)."""
