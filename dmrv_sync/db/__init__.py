"""The DMRV database: the supplier's own tables, the registry sync state beside them, one session factory."""
