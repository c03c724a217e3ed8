//! Hostile and unusual components, built in the test with `wasm-encoder`: compile bombs (which
//! need not match the world: compiling comes first), and real plugins with extra core instances
//! or an extra memory appended (component sections may come in any order, so appending keeps
//! the original's exports intact).

use wasm_encoder::{
    Alias, CanonicalFunctionSection, CodeSection, Component, ComponentAliasSection,
    ComponentExportKind, ComponentExportSection, ComponentTypeSection, ComponentValType,
    CustomSection, ExportKind, ExportSection, Function, FunctionSection, InstanceSection,
    Instruction, MemorySection, MemoryType, Module, ModuleArg, ModuleSection, TypeSection, ValType,
};

/// A component whose only export is `wizer-initialize: func()`, running `body` in a core
/// module with one memory of one 64 KiB page: the service pre-initialises such a component
/// as it compiles it (`host/src/plugins/preinit.rs`).
pub fn with_initializer(body: &[Instruction<'_>]) -> Vec<u8> {
    let memories = memory_of(1);
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut exports = ExportSection::new();
    exports.export("init", ExportKind::Func, 0);
    let mut func = Function::new([]);
    for instruction in body {
        func.instruction(instruction);
    }
    func.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&func);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&memories)
        .section(&exports)
        .section(&code);

    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    component.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::CoreInstanceExport {
        instance: 0,
        kind: ExportKind::Func,
        name: "init",
    });
    component.section(&aliases);
    let mut func_types = ComponentTypeSection::new();
    func_types
        .function()
        .params(std::iter::empty::<(&str, ComponentValType)>())
        .result(None);
    component.section(&func_types);
    let mut canon = CanonicalFunctionSection::new();
    canon.lift(0, 0, []);
    component.section(&canon);
    let mut component_exports = ComponentExportSection::new();
    component_exports.export("wizer-initialize", ComponentExportKind::Func, 0, None);
    component.section(&component_exports);
    component.finish()
}

/// A component embedding (and instantiating) one core module of `functions` small functions.
pub fn many_functions(functions: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..functions {
        funcs.function(0);
        let mut f = wasm_encoder::Function::new([]);
        f.instructions()
            .local_get(0)
            .i32_const(i.cast_signed())
            .i32_add()
            .i32_const(7)
            .i32_mul()
            .end();
        code.function(&f);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    component_of(&module)
}

/// A component embedding one core module with one enormous function: `ops` rounds of
/// arithmetic over many live locals seeded from the parameters (so nothing folds away): hard
/// work for the optimiser and the register allocator. 100,000 rounds (1.3 MB) took 78 s and
/// 260 MiB to compile here.
pub fn huge_function(ops: u32) -> Vec<u8> {
    huge_function_then(ops, false)
}

/// [`huge_function`] followed by a function that does not validate: compiling it takes as
/// long and then fails, so nothing is cached and only the memory of the failed hash saves a
/// second compile.
pub fn huge_function_then_invalid(ops: u32) -> Vec<u8> {
    huge_function_then(ops, true)
}

/// `plugin` (a working one) with a core module of one [`huge_function`] of `ops` rounds
/// appended and instantiated: still a working plugin, that takes a while to compile.
pub fn slow_to_compile(plugin: &[u8], ops: u32) -> Vec<u8> {
    append_module(plugin, &huge_module(ops, false), 1)
}

fn huge_function_then(ops: u32, invalid_after: bool) -> Vec<u8> {
    component_of(&huge_module(ops, invalid_after))
}

fn huge_module(ops: u32, invalid_after: bool) -> Module {
    const PARAMS: u32 = 4;
    const LOCALS: u32 = 400;
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I64; PARAMS as usize], [ValType::I64]);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut f = wasm_encoder::Function::new([(LOCALS, ValType::I64)]);
    {
        let mut body = f.instructions();
        for l in PARAMS..PARAMS + LOCALS {
            body.local_get(l % PARAMS)
                .i64_const(i64::from(l))
                .i64_mul()
                .local_set(l);
        }
        for k in 0..ops {
            let local = |n: u32| PARAMS + n % LOCALS;
            body.local_get(local(k))
                .local_get(local(k * 7 + 3))
                .i64_add()
                .local_get(local(k * 11 + 5))
                .i64_mul()
                .local_set(local(k * 13 + 1));
        }
        let mut sum = body.local_get(0);
        for l in 1..PARAMS + LOCALS {
            sum = sum.local_get(l).i64_xor();
        }
        sum.end();
    }
    let mut code = CodeSection::new();
    code.function(&f);
    if invalid_after {
        // `i32.add` on an empty stack.
        funcs.function(0);
        let mut bad = wasm_encoder::Function::new([]);
        bad.instructions().i32_add().end();
        code.function(&bad);
    }
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    module
}

fn component_of(module: &Module) -> Vec<u8> {
    let mut component = Component::new();
    component.section(&ModuleSection(module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    component.section(&instances);
    component.finish()
}

/// `plugin` with `n` more core instances (of an empty module) in every instance of it.
pub fn with_extra_core_instances(plugin: &[u8], n: u32) -> Vec<u8> {
    append_module(plugin, &Module::new(), n)
}

/// `plugin` with one more core instance owning a memory of `pages` 64 KiB pages.
pub fn with_extra_memory(plugin: &[u8], pages: u64) -> Vec<u8> {
    let mut module = Module::new();
    module.section(&memory_of(pages));
    append_module(plugin, &module, 1)
}

/// A memory section with one 32-bit memory of `pages` 64 KiB pages, unbounded.
fn memory_of(pages: u64) -> MemorySection {
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: pages,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    memories
}

/// `plugin` with a custom section that makes its bytes (and so its version) unique.
pub fn tagged(plugin: &[u8], tag: &str) -> Vec<u8> {
    let mut extra = Component::new();
    extra.section(&CustomSection {
        name: "test-tag".into(),
        data: tag.as_bytes().into(),
    });
    append(plugin, extra)
}

fn append_module(plugin: &[u8], module: &Module, instances: u32) -> Vec<u8> {
    let index = top_level_modules(plugin);
    let mut extra = Component::new();
    extra.section(&ModuleSection(module));
    let mut section = InstanceSection::new();
    for _ in 0..instances {
        section.instantiate(index, Vec::<(&str, ModuleArg)>::new());
    }
    extra.section(&section);
    append(plugin, extra)
}

/// `plugin`'s bytes followed by `extra`'s sections (its 8-byte header dropped).
fn append(plugin: &[u8], extra: Component) -> Vec<u8> {
    let extra = extra.finish();
    let mut out = plugin.to_vec();
    out.extend_from_slice(&extra[8..]);
    out
}

/// Core modules defined at the top level of a component: the index the next one gets.
fn top_level_modules(component: &[u8]) -> u32 {
    let mut depth = 0_u32;
    let mut modules = 0;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.unwrap() {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ModuleSection { .. } if depth == 1 => modules += 1,
            _ => {}
        }
    }
    modules
}
