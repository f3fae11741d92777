"""Demo data for the embedded default: realistic biochar DMRV records, a few deliberately invalid."""
