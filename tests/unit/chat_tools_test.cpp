// Tool calls in the generic format (model/chat_tools.h). The expected texts were written by llama-server
// --jinja (llama.cpp of llama-cpp-python 0.3.16) for SmolLM2's ChatML template, from its /apply-template;
// tests/python/test_llamacpp_parity.py asks llama-server itself for many more requests.
#include "model/chat_tools.h"

#include <gtest/gtest.h>

#include <string>

#include "model/json_schema_grammar.h"

namespace qe::model {
namespace {

using ojson = nlohmann::ordered_json;
using tokenizer::ChatTemplate;

std::vector<ToolFunction> weather_tools() {
  return {{"get_weather", "Get the weather for a city.", ojson::parse(R"({"type": "object", "properties":
              {"city": {"type": "string"}, "o": {}}, "required": ["city"]})")},
          {"noop", "", ojson::parse(R"({"type": "object", "properties": {}})")}};
}

ToolRequest request_for(std::span<const ToolFunction> tools, ToolChoice choice = ToolChoice::automatic,
                        std::string only = "", const ojson* response_schema = nullptr) {
  ToolRequest r;
  r.tools = tools;
  r.choice = choice;
  r.only = std::move(only);
  r.response_schema = response_schema;
  return r;
}

ToolChat chat(const std::vector<ToolChatMessage>& messages, const ToolRequest& request) {
  Result<ToolChat> c = tool_chat(messages, request, tool_call_example(ChatTemplate::kChatml, "<|im_end|>"));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message());
  return c.ok() ? *c : ToolChat{};
}

TEST(ChatTools, SystemMessageAsLlamaServerWritesIt) {
  const std::vector<ToolFunction> tools = weather_tools();
  const ToolChat c =
      chat({{"system", "Be brief.", {}, {}, {}}, {"user", "Weather?", {}, {}, {}}}, request_for(tools));
  ASSERT_EQ(c.messages.size(), 2u);
  EXPECT_EQ(c.messages[0].role, "system");
  // minja writes an empty object as an opened line; the example is how ChatML writes an assistant turn.
  EXPECT_EQ(c.messages[0].content, R"(Be brief.

Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` reply to the user's request

You can call any of the following tools to satisfy the user's requests: [
  {
    "type": "function",
    "function": {
      "name": "get_weather",
      "description": "Get the weather for a city.",
      "parameters": {
        "type": "object",
        "properties": {
          "city": {
            "type": "string"
          },
          "o": {
            
          }
        },
        "required": [
          "city"
        ]
      }
    }
  },
  {
    "type": "function",
    "function": {
      "name": "noop",
      "description": "",
      "parameters": {
        "type": "object",
        "properties": {
          
        }
      }
    }
  }
]

Example tool call syntax:

{
  "tool_calls": [
    {
      "name": "tool_name",
      "arguments": {
        "arg1": "some_value"
      },
      "id": "call_1___"
    }
  ]
}

)");
  EXPECT_TRUE(c.tool_reply);
  EXPECT_NE(c.grammar.find("response"), std::string::npos);
}

TEST(ChatTools, CallsAndResultsAreWrittenAsJsonTurns) {
  const std::vector<ToolChatMessage> history = {
      {"user", "Weather in Paris?", {}, {}, {}},
      {"assistant", std::nullopt, {{"call_abc", "get_weather", R"({"city": "Paris", "unit": "c"})"}}, {}, {}},
      {"tool", "18 C, sunny", {}, "get_weather", "call_abc"},
      {"tool", "", {}, "", "call_x"},
      {"assistant", "Checking.", {{"", "noop", "not json"}}, {}, {}}};
  const ToolChat c = chat(history, request_for({}));  // no tools: the turns are still written out
  ASSERT_EQ(c.messages.size(), 5u);
  EXPECT_FALSE(c.tool_reply);
  EXPECT_EQ(c.grammar, "");
  EXPECT_EQ(c.messages[1].role, "assistant");
  EXPECT_EQ(c.messages[1].content, R"({
  "tool_calls": [
    {
      "name": "get_weather",
      "arguments": {
        "city": "Paris",
        "unit": "c"
      },
      "id": "call_abc"
    }
  ]
})");
  EXPECT_EQ(c.messages[2].role, "user");
  EXPECT_EQ(c.messages[2].content, R"({
  "tool_response": {
    "tool": "get_weather",
    "content": "18 C, sunny",
    "tool_call_id": "call_abc"
  }
})");
  EXPECT_EQ(c.messages[3].content, R"({
  "tool_response": {
    "content": null,
    "tool_call_id": "call_x"
  }
})");
  // Arguments that are not JSON stay a string; content beside calls follows them.
  EXPECT_EQ(c.messages[4].content, R"({
  "tool_calls": [
    {
      "name": "noop",
      "arguments": "not json"
    }
  ],
  "content": "Checking."
})");
}

TEST(ChatTools, HostileInputIsWrittenOrRefusedNotThrown) {
  // Text that is not UTF-8 (fuzz_tool_reply found nlohmann throwing on it) is written with U+FFFD.
  const ToolChat c = chat({{"tool", "a\xff", {}, "f\xfe", "id"},
                           {"assistant", std::nullopt, {{"", "f", "{\"a\": \"\xff\"}"}}, {}, {}}},
                          request_for({}));
  EXPECT_NE(c.messages[0].content.find("a\xEF\xBF\xBD"), std::string::npos) << c.messages[0].content;
  // Arguments nesting past kMaxJsonDepth stay the string they are; parameters that deep are refused.
  const std::string deep = std::string(200, '[') + std::string(200, ']');
  const ToolChat d = chat({{"assistant", std::nullopt, {{"", "f", deep}}, {}, {}}}, request_for({}));
  EXPECT_NE(d.messages[0].content.find("\"[[[["), std::string::npos);
  ojson params = ojson::object();
  for (int i = 0; i < 200; ++i) params = ojson{{"properties", {{"a", std::move(params)}}}};
  const std::vector<ToolFunction> tools = {{"f", "", params}};
  Result<ToolChat> refused = tool_chat({}, request_for(tools, ToolChoice::none), "");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().reason, "the parameters of 'f' nest deeper than 128 levels");
  // A reply nesting that deep is not read as JSON.
  const std::string reply = "{\"response\": " + deep + "}";
  EXPECT_EQ(parse_tool_reply(reply, false).content, reply);
  EXPECT_EQ(parse_tool_reply(reply, true).content, "");
}

TEST(ChatTools, ChoiceShapesTheGrammar) {
  const std::vector<ToolFunction> tools = weather_tools();
  const std::vector<ToolChatMessage> user = {{"user", "Hi", {}, {}, {}}};
  const ToolChat none = chat(user, request_for(tools, ToolChoice::none));
  EXPECT_FALSE(none.tool_reply);
  EXPECT_EQ(none.grammar, "");
  ASSERT_EQ(none.messages.size(), 2u);  // the tools are described, without the JSON instruction
  EXPECT_EQ(none.messages[0].content.rfind("You can call any of the following tools", 0), 0u);

  const ToolChat required = chat(user, request_for(tools, ToolChoice::required));
  EXPECT_EQ(required.grammar.find("response"), std::string::npos) << required.grammar;
  EXPECT_NE(required.grammar.find("\"\\\"noop\\\"\""), std::string::npos) << required.grammar;

  const ToolChat only = chat(user, request_for(tools, ToolChoice::required, "noop"));
  EXPECT_EQ(only.grammar.find("get_weather"), std::string::npos) << only.grammar;
  EXPECT_NE(only.grammar.find("noop"), std::string::npos) << only.grammar;
  Result<ToolChat> unknown = tool_chat(user, request_for(tools, ToolChoice::required, "nope"), "");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().option, "tools");
  EXPECT_EQ(unknown.error().reason, "no tool is named 'nope'");

  // A response schema replaces the answer's string; the grammar parses.
  const ojson schema = ojson::parse(R"({"type": "object", "properties": {"n": {"type": "integer"}}})");
  const ToolChat typed = chat(user, request_for(tools, ToolChoice::automatic, "", &schema));
  EXPECT_NE(typed.grammar.find("integer"), std::string::npos) << typed.grammar;
  for (const ToolChat* c : {&required, &only, &typed})
    EXPECT_TRUE(Grammar::parse(c->grammar).ok()) << c->grammar;
}

TEST(ChatTools, ExampleIsWhatTheTemplateAddsForACall) {
  const std::string json_call = R"({
  "tool_calls": [
    {
      "name": "tool_name",
      "arguments": {
        "arg1": "some_value"
      },
      "id": "call_1___"
    }
  ]
})";
  EXPECT_EQ(tool_call_example(ChatTemplate::kChatml, "<|im_end|>"), json_call);
  // minja cuts the end of turn only where a newline follows it (ChatML): a template that ends the turn
  // with nothing after keeps it, as llama-server shows it.
  EXPECT_EQ(tool_call_example(ChatTemplate::kLlama3, "<|eot_id|>"), json_call + "<|eot_id|>");
  // [INST] ... [/INST] answer</s>: the space after [/INST] is the template's.
  EXPECT_EQ(tool_call_example(ChatTemplate::kMistralV3, "</s>"), " " + json_call + "</s>");
  EXPECT_EQ(tool_call_example(ChatTemplate::kChatml, ""), json_call + "<|im_end|>\n");
}

TEST(ChatTools, RepliesReadAsCallsOrContent) {
  ToolReply r = parse_tool_reply(
      R"({"tool_call": {"name": "get_weather", "arguments": {"city": "Paris", "a": [1, 2]}}})", false);
  ASSERT_EQ(r.calls.size(), 1u);
  EXPECT_EQ(r.calls[0].name, "get_weather");
  EXPECT_EQ(r.calls[0].arguments, R"({"city":"Paris","a":[1,2]})");  // compact, in the reply's order
  EXPECT_EQ(r.content, "");

  r = parse_tool_reply("{\"response\": \"Hello \\u00e9\\n\"}\n ", false);
  EXPECT_TRUE(r.calls.empty());
  EXPECT_EQ(r.content, "Hello \xC3\xA9\n");
  r = parse_tool_reply(R"({"response": {"n": 1}})", false);
  EXPECT_EQ(r.content, "{\n  \"n\": 1\n}");
  r = parse_tool_reply(R"({"tool_calls": [{"name": "a", "arguments": "{}", "id": "x1"}, {"name": "b"}]})",
                       false);
  ASSERT_EQ(r.calls.size(), 2u);
  EXPECT_EQ(r.calls[0].id, "x1");
  EXPECT_EQ(r.calls[1].arguments, "");
  // Cut short, nameless, or neither: read whole, the text is content.
  for (const char* text : {R"({"tool_call": {"name": "get_wea)", R"({"tool_call": {"arguments": {}}})",
                           R"({"other": 1})", "plain text", R"({"tool_calls": [{"name": ""}]})"}) {
    r = parse_tool_reply(text, false);
    EXPECT_TRUE(r.calls.empty()) << text;
    EXPECT_EQ(r.content, text);
  }
}

TEST(ChatTools, ACutReplyGivesWhatWasRead) {
  struct Case {
    const char* text;
    const char* content;
    const char* name;  // "" = no call
    const char* arguments;
  };
  const Case cases[] = {
      {"{", "", "", ""},
      {R"({"resp)", "", "", ""},
      {R"({"response": "Hel)", "Hel", "", ""},
      {R"({"response": "a\"b\)", "", "", ""},  // cut after a backslash: llama.cpp drops the answer
      {R"({"tool_call": {"name": "get_wea)", "", "", ""},  // no name yet: nothing
      {R"({"tool_call": {"name": "get_weather")", "", "get_weather", ""},
      {R"({"tool_call": {"name": "get_weather", "arguments": {)", "", "get_weather", "{"},
      {R"({"tool_call": {"name": "get_weather", "arguments": {"city": "Lon)", "", "get_weather",
       R"({"city":"Lon)"},
      {R"({"tool_call": {"name": "get_weather", "arguments": {"city": "London", )", "", "get_weather",
       R"({"city":"London",)"},
      {R"({"tool_call": {"name": "get_weather", "arguments": {"n": [1, 2)", "", "get_weather", R"({"n":[1,)"},
  };
  for (const Case& c : cases) {
    const ToolReply r = parse_tool_reply(c.text, true);
    EXPECT_EQ(r.content, c.content) << c.text;
    ASSERT_EQ(r.calls.size(), *c.name == 0 ? 0u : 1u) << c.text;
    if (r.calls.empty()) continue;
    EXPECT_EQ(r.calls[0].name, c.name) << c.text;
    EXPECT_EQ(r.calls[0].arguments, c.arguments) << c.text;
  }
  // A whole reply read as cut is read as whole.
  const ToolReply whole = parse_tool_reply(R"({"tool_call": {"name": "f", "arguments": {"x": 1}}})", true);
  ASSERT_EQ(whole.calls.size(), 1u);
  EXPECT_EQ(whole.calls[0].arguments, R"({"x":1})");
}

TEST(ChatTools, AStreamedAnswerGrowsTowardsTheFinalOne) {
  const std::string reply =
      "{ \"response\" :\n \"Caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" a\\\\b \xE2\x82\xAC end\" }";
  const std::string final_content = parse_tool_reply(reply, false).content;
  EXPECT_EQ(final_content, "Caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\" a\\b \xE2\x82\xAC end");
  // Read cut at every byte: always a prefix of the final answer (it may fall back, inside an escape).
  for (size_t n = 0; n <= reply.size(); ++n) {
    const std::string s = parse_tool_reply(std::string_view(reply).substr(0, n), true).content;
    EXPECT_EQ(final_content.compare(0, s.size(), s), 0) << "prefix " << n << ": " << s;
  }
}

}  // namespace
}  // namespace qe::model
