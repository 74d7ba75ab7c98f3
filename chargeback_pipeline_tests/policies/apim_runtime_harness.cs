// Runs the compiled policy expressions of apim_policies/ against a fake APIM context.
//
// The Python tests turn a policy document (fragments included) into a tree of steps: set-variable,
// choose/when, set-body, return-response, send-one-way-request, the token limit, retry and
// forward-request. Each forward-request takes the next of the scenario's backend attempts: the
// URL of the pool member it reached (context.Request.Url from then on) and, optionally, its answer.
// This program walks that tree like the gateway would, evaluating each expression through the
// generated PolicyExpressions class, and prints what happened as JSON: the variables, the request
// body sent to the backend, the response returned by return-response, and the one-way requests.
// Usage: mono policies.exe scenario.json
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;
using ApimStub;

namespace ApimHarness
{
    internal sealed class Body : IMessageBody
    {
        private readonly string text;
        private bool consumed;

        // How often a policy read this body (a passthrough stream must never be read).
        public int Reads { get; private set; }

        public Body(string text)
        {
            this.text = text;
        }

        public T As<T>(bool preserveContent = false)
        {
            if (consumed)
            {
                throw new InvalidOperationException("body already read without preserveContent");
            }
            consumed = !preserveContent;
            Reads++;
            object value;
            if (typeof(T) == typeof(string)) value = text;
            else if (typeof(T) == typeof(JObject)) value = JObject.Parse(text);
            else if (typeof(T) == typeof(JToken)) value = JToken.Parse(text);
            else throw new NotSupportedException("As<" + typeof(T).Name + "> is not simulated");
            return (T)value;
        }
    }

    internal sealed class Url : IUrl
    {
        public Url(string url)
        {
            var uri = new Uri(url);
            Host = uri.Host;
            Path = uri.AbsolutePath;
            var query = new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);
            foreach (var pair in uri.Query.TrimStart('?').Split(new[] { '&' }, StringSplitOptions.RemoveEmptyEntries))
            {
                var parts = pair.Split(new[] { '=' }, 2);
                var value = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "";
                query[Uri.UnescapeDataString(parts[0])] = new[] { value };
            }
            Query = query;
        }

        public string Host { get; private set; }
        public string Path { get; private set; }
        public IReadOnlyDictionary<string, string[]> Query { get; private set; }
    }

    internal sealed class Request : IRequest
    {
        public IMessageBody Body { get; set; }
        public IReadOnlyDictionary<string, string[]> Headers { get; set; }
        public string IpAddress { get; set; }
        public string Method { get; set; }
        public IUrl OriginalUrl { get; set; }
        public IUrl Url { get; set; }
    }

    internal sealed class Response : IResponse
    {
        public Body Content;
        public IMessageBody Body { get { return Content; } }
        public IReadOnlyDictionary<string, string[]> Headers { get; set; }
        public int StatusCode { get; set; }
    }

    internal sealed class Entity : IApi, IOperation, IProduct, ISubscription
    {
        public string Id { get; set; }
        public string Name { get; set; }
    }

    internal sealed class Deployment : IDeployment
    {
        public string Region { get; set; }
        public string ServiceName { get; set; }
    }

    internal sealed class LastError : ILastError
    {
        public string Source { get; set; }
        public string Reason { get; set; }
        public string Section { get; set; }
    }

    internal sealed class Context : IProxyRequestContext
    {
        public readonly Dictionary<string, object> Vars = new Dictionary<string, object>();
        public readonly List<JObject> Attempts = new List<JObject>();
        public Request Req;
        public Response Resp;

        public IApi Api { get; set; }
        public IDeployment Deployment { get; set; }
        public TimeSpan Elapsed { get; set; }
        public ILastError LastError { get; set; }
        public IOperation Operation { get; set; }
        public IProduct Product { get; set; }
        public IRequest Request { get { return Req; } }
        public Guid RequestId { get; set; }
        public IResponse Response { get { return Resp; } }
        public ISubscription Subscription { get; set; }
        public DateTime Timestamp { get; set; }
        public IReadOnlyDictionary<string, object> Variables { get { return Vars; } }
    }

    internal sealed class Run
    {
        private readonly Context context;
        private readonly JObject tokens;
        private readonly JArray sent = new JArray();
        private readonly JArray trace = new JArray();
        private readonly JArray forwarded = new JArray();
        private JObject returned;
        private string tokenVariable;

        public Run(Context context, JObject tokens)
        {
            this.context = context;
            this.tokens = tokens;
        }

        public void Steps(JToken steps)
        {
            foreach (JObject step in steps)
            {
                if (returned != null) return;
                Do(step);
            }
        }

        private void Do(JObject step)
        {
            string action = (string)step["action"];
            trace.Add(action + (step["name"] != null ? " " + (string)step["name"] : ""));
            switch (action)
            {
                case "set-variable":
                    context.Vars[(string)step["name"]] = Value(step["value"]);
                    break;
                case "choose":
                    foreach (JObject when in step["whens"])
                    {
                        if ((bool)Value(when["condition"]))
                        {
                            Steps(when["steps"]);
                            return;
                        }
                    }
                    Steps(step["otherwise"]);
                    break;
                case "set-request-body":
                    context.Req.Body = new Body((string)Value(step["value"]));
                    break;
                case "return-response":
                    returned = Message(step);
                    returned["status"] = JToken.FromObject(Value(step["status"]));
                    returned["reason"] = JToken.FromObject(Value(step["reason"]));
                    break;
                case "send-one-way-request":
                    var request = Message(step);
                    request["url"] = (string)Value(step["url"]);
                    request["method"] = step["method"];
                    request["managed_identity"] = step["managed_identity"];
                    sent.Add(request);
                    break;
                case "token-limit":
                    // Holds the prompt estimate until the response arrives, then the total.
                    tokenVariable = (string)step["name"];
                    if (tokens != null) context.Vars[tokenVariable] = (int)tokens["estimate"];
                    break;
                case "retry":
                    // Once, then again while the condition holds, at most `count` more times.
                    int count = Convert.ToInt32(Value(step["count"]), CultureInfo.InvariantCulture);
                    Steps(step["steps"]);
                    for (int again = 0; again < count && returned == null && (bool)Value(step["condition"]); again++)
                    {
                        Steps(step["steps"]);
                    }
                    break;
                case "forward-request":
                    if (tokens != null && tokenVariable != null) context.Vars[tokenVariable] = (int)tokens["total"];
                    if (context.Attempts.Count > 0)
                    {
                        var attempt = context.Attempts[0];
                        context.Attempts.RemoveAt(0);
                        context.Req.Url = new Url((string)attempt["url"]);
                        if (attempt["response"] is JObject answer) context.Resp = Program.BuildResponse(answer);
                    }
                    forwarded.Add(context.Req.Url.Host);
                    break;
                case "noop":
                    break;
                default:
                    throw new NotSupportedException("unknown step " + action);
            }
        }

        private JObject Message(JObject step)
        {
            var headers = new JObject();
            foreach (JProperty header in step["headers"])
            {
                headers[header.Name] = JToken.FromObject(Value(header.Value) ?? "");
            }
            var body = step["body"] != null ? Value(step["body"]) : null;
            return new JObject { ["headers"] = headers, ["body"] = body == null ? null : body.ToString() };
        }

        // A literal (string or number) or {"method": "E12"}: the compiled expression's value.
        private object Value(JToken value)
        {
            if (value == null || value.Type == JTokenType.Null) return null;
            if (value.Type != JTokenType.Object) return ((JValue)value).Value;
            MethodInfo method = typeof(PolicyExpressions).GetMethod((string)value["method"]);
            try
            {
                return method.Invoke(null, new object[] { context });
            }
            catch (TargetInvocationException error)
            {
                throw new InvalidOperationException(
                    "expression " + (string)value["method"] + " failed: " + error.InnerException, error);
            }
        }

        public JObject Output()
        {
            var variables = new JObject();
            foreach (var pair in context.Vars)
            {
                variables[pair.Key] = pair.Value == null ? JValue.CreateNull() : JToken.FromObject(pair.Value);
            }
            var body = context.Req.Body == null ? null : context.Req.Body.As<string>(true);
            var response = context.Resp == null || context.Resp.Content == null ? 0 : context.Resp.Content.Reads;
            return new JObject
            {
                ["response_body_reads"] = response,
                ["variables"] = variables,
                ["request_body"] = body,
                ["returned"] = returned,
                ["forwarded"] = forwarded,
                ["sent"] = sent,
                ["trace"] = trace,
            };
        }
    }

    internal static class Program
    {
        private static IReadOnlyDictionary<string, string[]> Headers(JToken headers)
        {
            var result = new Dictionary<string, string[]>(StringComparer.OrdinalIgnoreCase);
            if (headers == null) return result;
            foreach (JProperty header in headers)
            {
                result[header.Name] = new[] { (string)header.Value };
            }
            return result;
        }

        private static Entity Entity(JToken entity)
        {
            if (entity == null || entity.Type == JTokenType.Null) return null;
            return new Entity { Id = (string)entity["id"], Name = (string)entity["name"] };
        }

        private static Context Build(JObject spec)
        {
            var request = (JObject)spec["request"];
            var response = spec["response"] as JObject;
            var error = spec["last_error"] as JObject;
            var url = new Url((string)request["url"]);
            var context = new Context
            {
                Api = Entity(spec["api"]),
                Operation = Entity(spec["operation"]),
                Product = Entity(spec["product"]),
                Subscription = Entity(spec["subscription"]),
                Deployment = new Deployment
                {
                    ServiceName = (string)spec["gateway"]["service"],
                    Region = (string)spec["gateway"]["region"],
                },
                RequestId = Guid.Parse((string)spec["request_id"]),
                Timestamp = DateTime.Parse(
                    (string)spec["timestamp"], CultureInfo.InvariantCulture,
                    DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal),
                Elapsed = TimeSpan.FromMilliseconds((double)spec["elapsed_ms"]),
                LastError = error == null ? null : new LastError
                {
                    Source = (string)error["source"],
                    Reason = (string)error["reason"],
                    Section = (string)error["section"],
                },
            };
            context.Req = new Request
            {
                Body = request["body"].Type == JTokenType.Null ? null : new Body((string)request["body"]),
                Headers = Headers(request["headers"]),
                IpAddress = (string)request["ip"],
                Method = (string)request["method"],
                OriginalUrl = url,
                Url = url,
            };
            if (response != null)
            {
                context.Resp = BuildResponse(response);
            }
            if (spec["backend_attempts"] is JArray attempts)
            {
                foreach (JObject attempt in attempts) context.Attempts.Add(attempt);
            }
            return context;
        }

        internal static Response BuildResponse(JObject response)
        {
            var body = response["body"];
            return new Response
            {
                StatusCode = (int)response["status"],
                Headers = Headers(response["headers"]),
                Content = body == null || body.Type == JTokenType.Null ? null : new Body((string)body),
            };
        }

        private static int Main(string[] args)
        {
            var settings = new JsonSerializerSettings { DateParseHandling = DateParseHandling.None };
            var scenario = JsonConvert.DeserializeObject<JObject>(File.ReadAllText(args[0]), settings);
            foreach (JProperty value in scenario["named_values"])
            {
                NamedValues.Values[value.Name] = (string)value.Value;
            }
            var context = Build((JObject)scenario["context"]);
            var run = new Run(context, scenario["tokens"] as JObject);
            run.Steps(scenario["steps"]);
            Console.Out.Write(run.Output().ToString(Formatting.None));
            return 0;
        }
    }
}
