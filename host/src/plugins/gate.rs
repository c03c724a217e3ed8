//! Admission to the instance pool. The pooling allocator has fixed totals of component
//! instances (and fiber stacks), core instances, memories and tables; an instantiation that
//! finds one of them exhausted fails. So a call first reserves what its plugin's instance
//! needs of each ([`Needs`], read at load), waiting for room, and gives it back when its store
//! is gone.

use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::PluginError;
use super::shape::Needs;

/// The pool's totals, and the most one instance may take of each.
#[derive(Debug, Clone, Copy)]
pub(super) struct PoolSize {
    /// Component instances (and async stacks) alive at once.
    pub(super) slots: u32,
    pub(super) core_instances: u32,
    pub(super) memories: u32,
    pub(super) tables: u32,
    /// Per instance of a component (a plugin needing more is refused at load).
    pub(super) core_instances_per_component: u32,
    pub(super) memories_per_component: u32,
    pub(super) tables_per_component: u32,
}

/// One semaphore per pooled resource, each with the pool's total of permits.
pub(super) struct Gate {
    slots: Semaphore,
    core_instances: Semaphore,
    memories: Semaphore,
    tables: Semaphore,
}

/// Room reserved for one instance; released when dropped.
pub(super) struct Admission<'a> {
    _permits: [SemaphorePermit<'a>; 4],
}

impl Gate {
    pub(super) fn new(size: &PoolSize) -> Self {
        let permits = |n: u32| Semaphore::new(usize::try_from(n).unwrap_or(usize::MAX));
        Self {
            slots: permits(size.slots),
            core_instances: permits(size.core_instances),
            memories: permits(size.memories),
            tables: permits(size.tables),
        }
    }

    /// Waits up to `patience` for room for one instance with these needs. Permits are taken
    /// in one fixed order, so two waiting calls can never hold what the other waits for in a
    /// cycle; each semaphore is fair (first come, first served).
    ///
    /// # Errors
    /// [`PluginError::Busy`] when there was no room in time; [`PluginError::ShuttingDown`]
    /// once the gate is closed.
    pub(super) async fn admit(
        &self,
        needs: Needs,
        patience: Duration,
    ) -> Result<Admission<'_>, PluginError> {
        // The common case, room for it now: no timer to arm (a timer per call costs a lock
        // on the timer wheel that 64 concurrent callers contend for).
        if let Some(admission) = self.try_admit(needs) {
            return Ok(admission);
        }
        let admit = async {
            Ok::<_, tokio::sync::AcquireError>(Admission {
                _permits: [
                    self.slots.acquire().await?,
                    self.core_instances
                        .acquire_many(needs.core_instances)
                        .await?,
                    self.memories.acquire_many(needs.memories).await?,
                    self.tables.acquire_many(needs.tables).await?,
                ],
            })
        };
        match tokio::time::timeout(patience, admit).await {
            Ok(Ok(admission)) => Ok(admission),
            Ok(Err(_closed)) => Err(PluginError::ShuttingDown),
            Err(_elapsed) => Err(PluginError::Busy(patience)),
        }
    }

    /// Room for one instance if all of it is free now.
    fn try_admit(&self, needs: Needs) -> Option<Admission<'_>> {
        Some(Admission {
            _permits: [
                self.slots.try_acquire().ok()?,
                self.core_instances
                    .try_acquire_many(needs.core_instances)
                    .ok()?,
                self.memories.try_acquire_many(needs.memories).ok()?,
                self.tables.try_acquire_many(needs.tables).ok()?,
            ],
        })
    }

    /// Refuses new calls (they fail as shutting down).
    pub(super) fn close(&self) {
        for semaphore in [
            &self.slots,
            &self.core_instances,
            &self.memories,
            &self.tables,
        ] {
            semaphore.close();
        }
    }
}

impl PoolSize {
    /// Whether one instance with `needs` fits the per-component maxima; the message says what
    /// does not.
    pub(super) fn check(&self, needs: Needs) -> Result<(), PluginError> {
        let over = [
            (
                "core instances",
                needs.core_instances,
                self.core_instances_per_component,
            ),
            ("memories", needs.memories, self.memories_per_component),
            ("tables", needs.tables, self.tables_per_component),
        ]
        .into_iter()
        .find(|(_, need, max)| need > max);
        match over {
            Some((what, need, max)) => Err(PluginError::InstanceTooLarge(format!(
                "one instance needs {need} {what}; a plugin may use at most {max}"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: PoolSize = PoolSize {
        slots: 4,
        core_instances: 6,
        memories: 4,
        tables: 4,
        core_instances_per_component: 6,
        memories_per_component: 4,
        tables_per_component: 4,
    };

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_for_the_core_instances_it_needs_then_gives_up() {
        let gate = Gate::new(&SIZE);
        let wide = Needs {
            core_instances: 4,
            memories: 1,
            tables: 1,
        };
        let first = gate.admit(wide, Duration::from_secs(1)).await.unwrap();
        // Slots are free, core instances are not: the second waits, then is busy.
        let second = gate.admit(wide, Duration::from_millis(100)).await;
        assert!(
            matches!(second, Err(PluginError::Busy(_))),
            "{}",
            second.is_ok()
        );
        drop(first);
        let third = gate.admit(wide, Duration::from_millis(100)).await;
        assert!(third.is_ok());
        drop(third);
        gate.close();
        assert!(matches!(
            gate.admit(wide, Duration::from_secs(1)).await,
            Err(PluginError::ShuttingDown)
        ));
    }

    #[test]
    fn instances_over_the_per_plugin_maximum_are_refused() {
        let err = SIZE
            .check(Needs {
                core_instances: 7,
                memories: 1,
                tables: 1,
            })
            .unwrap_err();
        assert!(err.to_string().contains("7 core instances"), "{err}");
    }
}
