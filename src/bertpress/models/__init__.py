"""Teacher loading, student building and the anatomy/feature hooks shared by every objective and initialiser."""
