"""ticket-allocation: a thin HTTP face over the PL/pgSQL functions in sql/."""
