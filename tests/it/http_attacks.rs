//! HTTP/1.1 request smuggling and limits, HTTP/2 rapid reset, CONTINUATION floods and stream limits.
