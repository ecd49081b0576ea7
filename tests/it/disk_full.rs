//! A store that runs out of space or fails to sync answers 503 and never 202.
