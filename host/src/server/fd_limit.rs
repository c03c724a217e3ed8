//! The open-files limit. Every client connection is a file descriptor; at the common soft
//! limit of 1,024 a thousand idle sockets left none for the database, plugins or deliveries,
//! and accepting failed for everyone. So the soft limit is raised to the hard one at start
//! (always allowed), and the connection cap is fitted under it with room for the rest.

/// Descriptors kept for everything but client connections and outbound deliveries: the
/// database (three connections, each with its `-wal` and `-shm`), the plugin folder watcher,
/// the compile cache, the runtime's own (epoll, eventfds, timers) and some slack.
const RESERVED: u64 = 128;

/// Raises the soft open-files limit to the hard one; returns the soft limit now in force
/// (`None`: unlimited or unknown).
pub(super) fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
            && maximum > current
        {
            match setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(maximum),
                    maximum: Some(maximum),
                },
            ) {
                Ok(()) => {
                    tracing::info!(from = current, to = maximum, "raised the open-files limit");
                    return Some(maximum);
                }
                Err(e) => {
                    tracing::warn!(error = %e, current, maximum, "could not raise the open-files limit");
                    return Some(current);
                }
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    None
}

/// The connection cap: `configured`, lowered so that the connections, `outbound` delivery
/// connections and [`RESERVED`] fit in `open_files`. At least one.
pub(super) fn connection_cap(configured: usize, open_files: Option<u64>, outbound: usize) -> usize {
    let Some(open_files) = open_files else {
        return configured.max(1);
    };
    let outbound = u64::try_from(outbound).unwrap_or(u64::MAX);
    let room = open_files.saturating_sub(RESERVED).saturating_sub(outbound);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if room < configured {
        tracing::warn!(
            open_files,
            configured,
            cap = room.max(1),
            "the open-files limit leaves room for fewer client connections than max_connections; raise the hard limit (ulimit -Hn, LimitNOFILE=) to allow more"
        );
    }
    configured.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_room_for_the_database_plugins_and_deliveries() {
        assert_eq!(connection_cap(1024, Some(1024), 128), 1024 - 128 - 128);
        assert_eq!(connection_cap(100, Some(1 << 20), 128), 100);
        assert_eq!(connection_cap(100, None, 128), 100);
        assert_eq!(connection_cap(100, Some(64), 128), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_open_files_limit();
        #[cfg(unix)]
        {
            let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            assert_eq!(soft, now.current);
            if now.maximum.is_some() {
                assert_eq!(now.current, now.maximum);
            }
        }
        let _ = soft;
    }
}
