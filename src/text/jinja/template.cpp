#include "text/jinja/template.h"

#include "text/jinja/parser.h"

namespace flashmoe::jinja {

Template Template::parse(std::string_view source) {
    try {
        return Template(std::make_shared<const Body>(jinja::parse(tokenize(source))));
    } catch (const EvalError& e) {
        // String handling inside the lexer (e.g. invalid UTF-8) reports through EvalError.
        fail(ErrorKind::BadModel, "chat template: {}", e.what());
    }
}

std::string Template::render(const nlohmann::ordered_json& variables, const RenderOptions& options) const {
    if (!variables.is_object()) fail(ErrorKind::Internal, "chat template variables must be a JSON object");
    auto globals = std::make_shared<Scope>();
    Interpreter::add_builtins(*globals);
    try {
        for (const auto& [name, value] : variables.items()) globals->set(name, Value::from_json(value));
    } catch (const EvalError& e) {
        fail(e.kind(), "chat template input: {}", e.what());
    }
    Interpreter interpreter(options);
    return interpreter.render(*body_, std::move(globals));
}

}  // namespace flashmoe::jinja
