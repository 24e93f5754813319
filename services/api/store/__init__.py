"""The api's storage: SQL as named statements beside thin typed functions, and its Redis calls."""
