//! Placeholder: built by a later issue (see ARCHITECTURE.md §2).
