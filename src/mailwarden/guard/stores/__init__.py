"""Where the guard keeps its state: in this process (memory) or shared (Redis)."""
