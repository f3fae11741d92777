"""dmrv-sync: put a biochar supplier's DMRV records into carbon registries and follow their verdict."""

__version__ = "0.1.0"
