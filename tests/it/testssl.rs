//! testssl.sh against the TLS listener: no high or critical finding.
