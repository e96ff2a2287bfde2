"""One module per seed procedure: steps across the lab's nodes, ending in a Result."""
