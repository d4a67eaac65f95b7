"""Stores: named methods over the database, one module per area. SQL lives here and nowhere else."""
