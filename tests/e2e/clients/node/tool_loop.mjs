// The Node `openai` package against thinkgate: a streamed reasoning turn folded with
// finalChatCompletion() (it throws "missing role for choice 0" when a relayed stream's
// first delta has no role), then the tool result sent back with the assistant message
// as the SDK returned it. Prints one JSON line of what it saw.
import OpenAI from "openai";

const [baseURL] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000,
  defaultHeaders: { "x-thinkgate-force-route": "reasoning" } });
const tools = [{ type: "function", function: { name: "get_weather", description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } }];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];

const stream = client.chat.completions.stream({ model: "auto", messages, tools });
const first = await stream.finalChatCompletion();
const msg = first.choices[0].message;
messages.push(msg);
messages.push({ role: "tool", tool_call_id: msg.tool_calls[0].id, content: "sunny, 21 C" });
const second = await client.chat.completions.create({ model: "auto", messages, tools });
const plain = await client.chat.completions.stream({ model: "auto", messages: [{ role: "user", content: "hi" }] })
  .finalChatCompletion();
console.log(JSON.stringify({
  role: msg.role,
  tool: msg.tool_calls[0].function.name,
  sentBack: Object.keys(msg),
  answer: second.choices[0].message.content,
  plain: plain.choices[0].message.content,
}));
