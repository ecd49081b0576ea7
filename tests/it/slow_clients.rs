//! Slow and silent clients: each closed at its timeout while legitimate traffic keeps flowing, memory bounded.
