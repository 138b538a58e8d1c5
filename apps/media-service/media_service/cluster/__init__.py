"""Several media-service replicas behind one Redis (`--redis-url`): stream leases, the replicas'
load, placement of new streams, failover and hand-over. Without `--redis-url` none of it runs."""
