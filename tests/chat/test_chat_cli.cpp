// `flashmoe run` and `flashmoe chat` end to end on the bundled tiny model: run from a pipe (plain
// text, no escape codes), with --chat, from stdin and a file, stopped by SIGINT; chat driven in a
// real terminal through tmux (send-keys / capture-pane): prefix reuse across turns, /reset, /save
// and /load, Ctrl-C during a reply, leaving with Ctrl-C twice or Ctrl-D with the terminal restored.
// Every wait has a deadline; the tmux tests skip when tmux is not installed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(FLASHMOE_SOURCE_DIR) + "/models/tiny-qwen35moe";
const std::string kBin = FLASHMOE_BINARY;

std::string quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

struct Shell {
    int code = -1;
    std::string out;
};

// Runs `cmd` under sh with a time limit; stdout (and stderr, when the command does not redirect it).
Shell sh(const std::string& cmd, int limit_s = 180) {
    const std::string full = "timeout " + std::to_string(limit_s) + " sh -c " + quote(cmd) + " 2>&1";
    Shell r;
    FILE* pipe = popen(full.c_str(), "r");
    if (!pipe) return r;
    std::array<char, 4096> buf;
    while (size_t n = fread(buf.data(), 1, buf.size(), pipe)) r.out.append(buf.data(), n);
    const int status = pclose(pipe);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// One temporary directory for the test binary; the packed copy of the model is made once, in it.
class TempEnvironment : public ::testing::Environment {
public:
    static std::string dir() { return dir_; }
    void SetUp() override {
        char tmpl[] = "/tmp/flashmoe_test_chat_XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        ::setenv("FLASHMOE_CACHE", (dir_ + "/cache").c_str(), 1);
        ::setenv("FLASHMOE_HISTORY", (dir_ + "/history").c_str(), 1);
        ::unsetenv("NO_COLOR");  // the chat's own styling is under test
        Shell s = sh(kBin + " run " + kModel + " --ids 1 -n 1 --print-ids", 300);  // converts the snapshot
        ASSERT_EQ(s.code, 0) << s.out;
    }
    void TearDown() override { fs::remove_all(dir_); }

private:
    static inline std::string dir_;
};
const auto* const kEnv = ::testing::AddGlobalTestEnvironment(new TempEnvironment);

bool has_escape(const std::string& s) { return s.find('\x1b') != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------- run

TEST(Run, PipeGetsPlainTextThatContinuesThePrompt) {
    const std::string d = TempEnvironment::dir();
    Shell s = sh(kBin + " run " + kModel + " -p 'And God said' -n 12 --temp 0 --stats >" + d + "/out 2>" + d + "/err");
    ASSERT_EQ(s.code, 0) << s.out << slurp(d + "/err");
    const std::string out = slurp(d + "/out"), err = slurp(d + "/err");
    EXPECT_FALSE(has_escape(out)) << out;
    EXPECT_FALSE(has_escape(err)) << err;
    EXPECT_EQ(out.rfind("And God said", 0), 0u) << out;
    EXPECT_GT(out.size(), std::string("And God said\n").size());
    EXPECT_EQ(out.back(), '\n');
    EXPECT_NE(err.find("prompt:"), std::string::npos) << err;
    EXPECT_NE(err.find("generated:   12 tokens"), std::string::npos) << err;
    EXPECT_NE(err.find("hit rate"), std::string::npos) << err;
}

TEST(Run, StdinAndFileGiveTheSameGreedyText) {
    const std::string d = TempEnvironment::dir();
    std::ofstream(d + "/prompt.txt") << "In the beginning";
    Shell a = sh("printf 'In the beginning' | " + kBin + " run " + kModel + " -n 10 --temp 0 2>/dev/null");
    Shell b = sh(kBin + " run " + kModel + " -f " + d + "/prompt.txt -n 10 --temp 0 2>/dev/null");
    ASSERT_EQ(a.code, 0) << a.out;
    ASSERT_EQ(b.code, 0) << b.out;
    EXPECT_EQ(a.out, b.out);
    EXPECT_EQ(a.out.rfind("In the beginning", 0), 0u) << a.out;
}

TEST(Run, ChatWrapsThePromptInTheTemplate) {
    const std::string d = TempEnvironment::dir();
    auto prompt_tokens = [](const std::string& err) {
        std::smatch m;
        return std::regex_search(err, m, std::regex(R"(prompt:\s+(\d+) tokens)")) ? std::stoi(m[1]) : -1;
    };
    Shell plain = sh(kBin + " run " + kModel + " -p 'Who made the light?' -n 1 --temp 0 --stats 2>" + d + "/e1 >/dev/null");
    Shell chat = sh(kBin + " run " + kModel + " --chat --no-think -p 'Who made the light?' -n 24 --temp 0 --stats >" + d +
                    "/o2 2>" + d + "/e2");
    ASSERT_EQ(plain.code, 0) << slurp(d + "/e1");
    ASSERT_EQ(chat.code, 0) << slurp(d + "/e2");
    // <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n around the question.
    EXPECT_GE(prompt_tokens(slurp(d + "/e2")), prompt_tokens(slurp(d + "/e1")) + 8);
    const std::string out = slurp(d + "/o2");
    EXPECT_FALSE(has_escape(out)) << out;
    EXPECT_EQ(out.find("Who made the light?"), std::string::npos) << "a chat reply does not echo the question";
    EXPECT_EQ(out.find("<think>"), std::string::npos) << out;
    EXPECT_EQ(out.find("</think>"), std::string::npos) << out;
    EXPECT_EQ(out.find("<|im_"), std::string::npos) << out;
    EXPECT_FALSE(out.empty());
}

TEST(Run, ChatWithThinkingAndHideThinkingPrintsNoTags) {
    Shell s = sh(kBin + " run " + kModel + " --chat --hide-thinking -p 'Say something' -n 20 --temp 0 2>/dev/null");
    ASSERT_EQ(s.code, 0) << s.out;
    EXPECT_FALSE(has_escape(s.out)) << s.out;
    EXPECT_EQ(s.out.find("think>"), std::string::npos) << s.out;
}

TEST(Run, SigintStopsGenerationAndStillReports) {
    const std::string d = TempEnvironment::dir();
    Shell s = sh(kBin + " run " + kModel + " -p 'And' -n 10000000 --ignore-eos --temp 0 --stats >" + d + "/o3 2>" + d +
                 "/e3 & pid=$!; while [ ! -s " + d + "/o3 ]; do sleep 0.1; done; sleep 0.5; kill -INT $pid; wait $pid; "
                 "echo code=$?");
    EXPECT_NE(s.out.find("code=130"), std::string::npos) << s.out << slurp(d + "/e3");
    EXPECT_NE(slurp(d + "/e3").find("generated:"), std::string::npos) << slurp(d + "/e3");
    const std::string out = slurp(d + "/o3");
    ASSERT_FALSE(out.empty());
    EXPECT_EQ(out.back(), '\n');
}

// ---------------------------------------------------------------- chat in tmux

namespace {

struct Status {
    bool stopped = false;
    int tokens = 0, prompt_new = 0, reused = 0;
};

// A `flashmoe chat` in a detached tmux session of its own server; the exit code and the terminal
// settings after exit land in files.
class ChatPane {
public:
    explicit ChatPane(const std::string& flags) {
        static int counter = 0;
        name_ = "pane_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
        dir_ = TempEnvironment::dir() + "/" + name_;
        fs::create_directories(dir_);
        const std::string inner = kBin + " chat " + kModel + " " + flags + "; echo exit=$? >" + dir_ +
                                  "/exit; stty -a >" + dir_ + "/stty";
        Shell s = tmux("new-session -d -s chat -x 160 -y 60 " + quote(inner));
        ok_ = s.code == 0;
        EXPECT_TRUE(ok_) << s.out;
    }
    ~ChatPane() {
        tmux("kill-server");
        fs::remove(dir_ + "/tmux.sock");
    }

    // The server's socket lives in the test's directory, so nothing is left behind in /tmp/tmux-*.
    Shell tmux(const std::string& args) { return sh("tmux -S " + dir_ + "/tmux.sock " + args, 20); }
    void type(const std::string& text) { tmux("send-keys -t chat -l " + quote(text)); }
    void key(const std::string& name) { tmux("send-keys -t chat " + name); }
    void line(const std::string& text) {
        type(text);
        key("Enter");
    }
    std::string screen(bool escapes = false) {
        return tmux(std::string("capture-pane -p -J -t chat -S -3000") + (escapes ? " -e" : "")).out;
    }
    const std::string& dir() const { return dir_; }

    bool wait_for(const std::function<bool(const std::string&)>& pred, double seconds = 60) {
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < end) {
            if (pred(screen())) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return false;
    }
    bool wait_text(const std::string& text, double seconds = 60) {
        return wait_for([&](const std::string& s) { return s.find(text) != std::string::npos; }, seconds);
    }
    // The editor shows "> " on the last line: the chat is waiting for input.
    bool wait_prompt(double seconds = 60) {
        return wait_for(
            [](const std::string& s) {
                std::string t = s;
                while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
                size_t nl = t.rfind('\n');
                return t.substr(nl == std::string::npos ? 0 : nl + 1) == ">";
            },
            seconds);
    }
    std::vector<Status> statuses() {
        std::vector<Status> out;
        const std::string s = screen();
        std::regex re(R"(\[(stopped, )?(\d+) tokens, [^\]\n]*prompt (\d+) new \+ (\d+) reused)");
        for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator(); ++it) {
            out.push_back({(*it)[1].matched, std::stoi((*it)[2]), std::stoi((*it)[3]), std::stoi((*it)[4])});
        }
        return out;
    }
    bool wait_statuses(size_t n, double seconds = 60) {
        return wait_for([&](const std::string&) { return statuses().size() >= n; }, seconds) && wait_prompt(seconds);
    }
    // Waits for the chat to exit; returns its "exit=N" line.
    std::string exit_line(double seconds = 30) {
        auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
        while (std::chrono::steady_clock::now() < end) {
            std::string s = slurp(dir_ + "/exit");
            if (!s.empty() && fs::exists(dir_ + "/stty") && !slurp(dir_ + "/stty").empty()) return s;
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return "(still running)\n" + screen();
    }
    // The terminal is back in cooked mode with echo after the chat left it.
    void expect_terminal_restored() {
        const std::string stty = slurp(dir_ + "/stty");
        for (const char* flag : {"icanon", "echo", "isig"}) {
            EXPECT_TRUE(std::regex_search(stty, std::regex(std::string("(^|\\s)") + flag + "(\\s|$)"))) << flag << "\n"
                                                                                                       << stty;
        }
    }

    bool ok_ = false;

private:
    std::string name_, dir_;
};

bool have_tmux() { return std::system("command -v tmux >/dev/null 2>&1") == 0; }

#define REQUIRE_TMUX() \
    if (!have_tmux()) GTEST_SKIP() << "tmux is not installed"

}  // namespace

TEST(ChatTmux, SecondTurnReusesTheFirstAndResetStartsOver) {
    REQUIRE_TMUX();
    ChatPane p("--temp 0 -n 16 --no-think");
    ASSERT_TRUE(p.ok_);
    ASSERT_TRUE(p.wait_prompt()) << p.screen();
    EXPECT_NE(p.screen().find("/help"), std::string::npos);
    p.line("In the beginning God created the heaven and the earth.");
    ASSERT_TRUE(p.wait_statuses(1)) << p.screen();
    p.line("And the earth was without form.");
    ASSERT_TRUE(p.wait_statuses(2)) << p.screen();
    auto st = p.statuses();
    EXPECT_EQ(st[0].reused, 0);
    EXPECT_GT(st[0].tokens, 0);
    // The second prompt differs from the first turn's tokens only after the first user message (the
    // template rewrites the assistant turn), so all of that message is reused: everything but the
    // assistant header (<|im_start|>assistant\n<think>\n\n</think>\n\n).
    EXPECT_GT(st[1].reused, 0) << p.screen();
    EXPECT_GE(st[1].reused, st[0].prompt_new - 10) << p.screen();
    EXPECT_LT(st[1].prompt_new, st[0].prompt_new + st[0].tokens + 20) << p.screen();

    p.line("/reset");
    ASSERT_TRUE(p.wait_text("new conversation")) << p.screen();
    p.line("Let there be light.");
    ASSERT_TRUE(p.wait_statuses(3)) << p.screen();
    EXPECT_EQ(p.statuses()[2].reused, 0) << p.screen();

    // A system message comes first in the prompt, and other k computes other states: no reuse.
    p.line("/system Speak as the scripture.");
    ASSERT_TRUE(p.wait_text("system message set")) << p.screen();
    p.line("Let there be light.");
    ASSERT_TRUE(p.wait_statuses(4)) << p.screen();
    EXPECT_EQ(p.statuses()[3].reused, 0) << p.screen();
    EXPECT_GT(p.statuses()[3].prompt_new, p.statuses()[2].prompt_new) << p.screen();
    p.line("/k 2");
    ASSERT_TRUE(p.wait_text("k = 2;")) << p.screen();
    p.line("And there was light.");
    ASSERT_TRUE(p.wait_statuses(5)) << p.screen();
    EXPECT_EQ(p.statuses()[4].reused, 0) << p.screen();
    p.line("/k 99");
    ASSERT_TRUE(p.wait_text("/k takes a number from 0")) << p.screen();

    p.line("/help");
    ASSERT_TRUE(p.wait_text("/save FILE")) << p.screen();
    p.line("/bogus");
    ASSERT_TRUE(p.wait_text("unknown command /bogus")) << p.screen();
    p.line("/exit");
    EXPECT_EQ(p.exit_line(), "exit=0\n");
    p.expect_terminal_restored();
}

TEST(ChatTmux, SaveThenLoadRestoresTheConversation) {
    REQUIRE_TMUX();
    ChatPane p("--temp 0 -n 12 --no-think --system 'Answer as the scripture does.'");
    ASSERT_TRUE(p.ok_);
    ASSERT_TRUE(p.wait_prompt()) << p.screen();
    p.line("Who divided the light from the darkness?");
    ASSERT_TRUE(p.wait_statuses(1)) << p.screen();
    p.line("What did he call the light?");
    ASSERT_TRUE(p.wait_statuses(2)) << p.screen();
    const std::string file = p.dir() + "/conv.json";
    p.line("/save " + file);
    ASSERT_TRUE(p.wait_text("saved 5 messages")) << p.screen();
    nlohmann::json saved = nlohmann::json::parse(slurp(file));
    ASSERT_EQ(saved.size(), 5u) << saved.dump(1);
    EXPECT_EQ(saved[0]["role"], "system");
    EXPECT_EQ(saved[1]["role"], "user");
    EXPECT_EQ(saved[1]["content"], "Who divided the light from the darkness?");
    EXPECT_EQ(saved[2]["role"], "assistant");
    EXPECT_EQ(saved[4]["role"], "assistant");

    p.line("/reset");
    ASSERT_TRUE(p.wait_text("new conversation")) << p.screen();
    p.line("/load " + file);
    ASSERT_TRUE(p.wait_text("loaded 5 messages (2 user turns)")) << p.screen();
    p.line("And the darkness?");
    ASSERT_TRUE(p.wait_statuses(3)) << p.screen();
    auto st = p.statuses();
    // The loaded history is part of the third prompt: longer than both earlier prompts.
    EXPECT_GT(st[2].prompt_new + st[2].reused, st[1].prompt_new + st[1].reused) << p.screen();
    p.line("/save " + file);
    ASSERT_TRUE(p.wait_text("saved 7 messages")) << p.screen();
    EXPECT_EQ(nlohmann::json::parse(slurp(file)).size(), 7u);

    p.line("/load " + p.dir() + "/missing.json");
    ASSERT_TRUE(p.wait_text("error:")) << p.screen();
    p.key("C-d");
    EXPECT_EQ(p.exit_line(), "exit=0\n");
    p.expect_terminal_restored();
}

TEST(ChatTmux, CtrlCStopsTheReplyKeepsTheChatAndTwiceAtThePromptExits) {
    REQUIRE_TMUX();
    ChatPane p("--temp 0 -n 100000000 --ignore-eos --no-think");
    ASSERT_TRUE(p.ok_);
    ASSERT_TRUE(p.wait_prompt()) << p.screen();
    p.line("Tell me of the generations of Adam.");
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    EXPECT_TRUE(p.statuses().empty()) << "the reply ended on its own:\n" << p.screen();
    p.key("C-c");
    ASSERT_TRUE(p.wait_statuses(1, 30)) << p.screen();
    auto st = p.statuses();
    EXPECT_TRUE(st[0].stopped);
    EXPECT_GT(st[0].tokens, 0);

    // Still chatting, and the stopped reply is part of the conversation.
    p.line("/stats");
    ASSERT_TRUE(p.wait_text("chat: 1 replies")) << p.screen();
    p.key("C-c");
    ASSERT_TRUE(p.wait_text("Ctrl-C again or Ctrl-D to exit")) << p.screen();
    p.key("C-c");
    EXPECT_EQ(p.exit_line(), "exit=0\n");
    p.expect_terminal_restored();
}

TEST(ChatTmux, ThinkingIsDimmedAndHiddenOnRequest) {
    REQUIRE_TMUX();
    ChatPane p("--temp 0 -n 12");
    ASSERT_TRUE(p.ok_);
    ASSERT_TRUE(p.wait_prompt()) << p.screen();
    p.line("Speak.");
    ASSERT_TRUE(p.wait_statuses(1)) << p.screen();
    // The reply opens in the <think> block the template leaves open: it is drawn dim (SGR 2).
    const std::string styled = p.screen(true);
    const size_t asked = styled.find("Speak.");
    ASSERT_NE(asked, std::string::npos);
    EXPECT_NE(styled.find("\x1b[2m", asked), std::string::npos) << styled;
    EXPECT_EQ(p.screen().find("think>"), std::string::npos) << p.screen();
    p.line("/exit");
    EXPECT_EQ(p.exit_line(), "exit=0\n");
}

TEST(ChatTmux, PipedInputWorksWithoutATerminal) {
    const std::string d = TempEnvironment::dir();
    Shell s = sh("printf 'In the beginning\\n/stats\\n' | " + kBin + " chat " + kModel +
                 " --temp 0 -n 8 --no-think --no-history");
    EXPECT_EQ(s.code, 0) << s.out;
    EXPECT_FALSE(has_escape(s.out)) << s.out;
    EXPECT_NE(s.out.find("prompt "), std::string::npos) << s.out;
    EXPECT_NE(s.out.find("chat: 1 replies"), std::string::npos) << s.out;
}
