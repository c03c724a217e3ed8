//! What one instance of a component takes from the instance pool: its core instances, and
//! the memories and tables those define, read from the component's structure with
//! `wasmparser` before anything is compiled. A call reserves exactly that much before it
//! instantiates (see `gate.rs`), so a plugin made of many core modules (a JS or Python
//! component) waits for room instead of failing to instantiate.

use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind,
    ComponentTypeRef, Encoding, Instance, Parser, Payload,
};

use super::PluginError;

/// Pool resources one instance uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories defined by those instances.
    pub memories: u32,
    /// Tables defined by those instances.
    pub tables: u32,
}

/// Counts that may grow past `u32` while reading (a component instantiating a component that
/// instantiates ...): saturating, checked against the pool afterwards.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    core_instances: u64,
    memories: u64,
    tables: u64,
}

impl Count {
    fn add(&mut self, other: Count) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
    }
}

/// One module or component being read.
enum Frame {
    /// A core module: the memories and tables it defines.
    Module(Count),
    /// A component: what instantiating it creates so far, and what each entry of its module
    /// and component index spaces would create.
    Component {
        total: Count,
        modules: Vec<Count>,
        components: Vec<Count>,
    },
}

/// What one instantiation of `component` creates, nested components included (each counted
/// once per instantiation of it). Modules and components the component imports, or aliases
/// from an instance's exports, count as nothing: a plugin cannot receive either from the host,
/// so such a component fails its world check anyway.
///
/// # Errors
/// When the bytes do not parse.
pub(super) fn needs(component: &[u8]) -> Result<Needs, PluginError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let parse_err = |e: wasmparser::BinaryReaderError| PluginError::Compile(e.to_string());
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload.map_err(parse_err)?;
        match payload {
            Payload::Version { encoding, .. } => stack.push(match encoding {
                Encoding::Component => Frame::Component {
                    total: Count::default(),
                    modules: Vec::new(),
                    components: Vec::new(),
                },
                Encoding::Module => Frame::Module(Count {
                    core_instances: 1,
                    ..Count::default()
                }),
            }),
            Payload::End(_) => {
                let (done, is_module) = match stack.pop() {
                    Some(Frame::Module(count)) => (count, true),
                    Some(Frame::Component { total, .. }) => (total, false),
                    None => continue,
                };
                match stack.last_mut() {
                    Some(Frame::Component {
                        modules,
                        components,
                        ..
                    }) => {
                        if is_module {
                            modules.push(done);
                        } else {
                            components.push(done);
                        }
                    }
                    Some(Frame::Module(_)) => {}
                    None => root = Some(done),
                }
            }
            Payload::MemorySection(reader) => {
                if let Some(Frame::Module(count)) = stack.last_mut() {
                    count.memories = count.memories.saturating_add(u64::from(reader.count()));
                }
            }
            Payload::TableSection(reader) => {
                if let Some(Frame::Module(count)) = stack.last_mut() {
                    count.tables = count.tables.saturating_add(u64::from(reader.count()));
                }
            }
            Payload::InstanceSection(reader) => {
                if let Some(Frame::Component { total, modules, .. }) = stack.last_mut() {
                    for instance in reader {
                        if let Instance::Instantiate { module_index, .. } =
                            instance.map_err(parse_err)?
                        {
                            total.add(entry(modules, module_index));
                        }
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                if let Some(Frame::Component {
                    total, components, ..
                }) = stack.last_mut()
                {
                    for instance in reader {
                        if let ComponentInstance::Instantiate {
                            component_index, ..
                        } = instance.map_err(parse_err)?
                        {
                            total.add(entry(components, component_index));
                        }
                    }
                }
            }
            Payload::ComponentImportSection(reader) => {
                if let Some(Frame::Component {
                    modules,
                    components,
                    ..
                }) = stack.last_mut()
                {
                    for import in reader {
                        match import.map_err(parse_err)?.ty {
                            ComponentTypeRef::Module(_) => modules.push(Count::default()),
                            ComponentTypeRef::Component(_) => components.push(Count::default()),
                            _ => {}
                        }
                    }
                }
            }
            Payload::ComponentExportSection(reader) => {
                if let Some(Frame::Component {
                    modules,
                    components,
                    ..
                }) = stack.last_mut()
                {
                    for export in reader {
                        // An export is a new index for the same item.
                        let export = export.map_err(parse_err)?;
                        match export.kind {
                            ComponentExternalKind::Module => {
                                let same = entry(modules, export.index);
                                modules.push(same);
                            }
                            ComponentExternalKind::Component => {
                                let same = entry(components, export.index);
                                components.push(same);
                            }
                            _ => {}
                        }
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    alias_entry(&mut stack, &alias.map_err(parse_err)?);
                }
            }
            _ => {}
        }
    }
    let total =
        root.ok_or_else(|| PluginError::NotAComponent("no component found in the bytes".into()))?;
    let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Ok(Needs {
        core_instances: narrow(total.core_instances),
        memories: narrow(total.memories),
        tables: narrow(total.tables),
    })
}

/// An alias adds an entry to the module or component index space of the current component.
fn alias_entry(stack: &mut [Frame], alias: &ComponentAlias<'_>) {
    let (is_module, found) = match *alias {
        ComponentAlias::InstanceExport {
            kind: ComponentExternalKind::Module,
            ..
        } => (true, Count::default()),
        ComponentAlias::InstanceExport {
            kind: ComponentExternalKind::Component,
            ..
        } => (false, Count::default()),
        ComponentAlias::Outer { kind, count, index } => {
            let is_module = match kind {
                ComponentOuterAliasKind::CoreModule => true,
                ComponentOuterAliasKind::Component => false,
                _ => return,
            };
            let depth = usize::try_from(count).unwrap_or(usize::MAX);
            let outer = stack
                .iter()
                .rev()
                .filter_map(|f| match f {
                    Frame::Component {
                        modules,
                        components,
                        ..
                    } => Some((modules, components)),
                    Frame::Module(_) => None,
                })
                .nth(depth)
                .map_or(Count::default(), |(modules, components)| {
                    entry(if is_module { modules } else { components }, index)
                });
            (is_module, outer)
        }
        _ => return,
    };
    if let Some(Frame::Component {
        modules,
        components,
        ..
    }) = stack.last_mut()
    {
        if is_module {
            modules.push(found);
        } else {
            components.push(found);
        }
    }
}

fn entry(space: &[Count], i: u32) -> Count {
    usize::try_from(i)
        .ok()
        .and_then(|i| space.get(i))
        .copied()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_instantiations_including_nested_components() {
        // (component (core module $m) (core instance (instantiate $m)) ×2
        //   (component $c (core module $n) (core instance (instantiate $n)))
        //   (instance (instantiate $c)) ×3)
        let mut with_memory = wasm_encoder::Module::new();
        let mut memories = wasm_encoder::MemorySection::new();
        memories.memory(wasm_encoder::MemoryType {
            minimum: 1,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        });
        with_memory.section(&memories);
        let mut inner = wasm_encoder::Component::new();
        inner.section(&wasm_encoder::ModuleSection(&with_memory));
        let mut one = wasm_encoder::InstanceSection::new();
        one.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        inner.section(&one);
        let mut outer = wasm_encoder::Component::new();
        outer.section(&wasm_encoder::ModuleSection(&wasm_encoder::Module::new()));
        let mut two = wasm_encoder::InstanceSection::new();
        two.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        two.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        outer.section(&two);
        outer.section(&wasm_encoder::NestedComponentSection(&inner));
        let mut three = wasm_encoder::ComponentInstanceSection::new();
        for _ in 0..3 {
            three.instantiate(
                0,
                Vec::<(&str, wasm_encoder::ComponentExportKind, u32)>::new(),
            );
        }
        outer.section(&three);
        assert_eq!(
            needs(&outer.finish()).unwrap(),
            Needs {
                core_instances: 5,
                memories: 3,
                tables: 0
            }
        );
    }

    #[test]
    fn the_bundled_plugins_have_a_few_core_instances() {
        for (name, bytes) in super::super::BUNDLED {
            let n = needs(bytes).unwrap();
            assert!((1..=8).contains(&n.core_instances), "{name}: {n:?}");
            assert!((1..=4).contains(&n.memories), "{name}: {n:?}");
        }
    }
}
