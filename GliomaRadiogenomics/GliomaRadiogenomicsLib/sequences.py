"""The MRI sequences the product knows: keys and display names (one definition; case.py and inputs.py import it,
so neither imports the other at module level)."""
SEQUENCES = ("t1", "t1c", "t2", "flair")
SEQUENCE_NAMES = {"t1": "T1", "t1c": "T1c", "t2": "T2", "flair": "FLAIR"}
