//! What people do with what the gateway kept: the network manager's quarantine actions and the
//! DSL's audit search and export. The command line and the web page both call these, so a
//! release delivers exactly once and every action is audited the same way whichever is used.

pub mod audit_search;
pub mod cases;
pub mod csv;
pub mod digest;
pub mod quarantine;
pub mod report;
pub mod sender_release;
