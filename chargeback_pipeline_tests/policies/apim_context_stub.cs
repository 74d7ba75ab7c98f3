// Typed stand-in for the `context` that APIM gives policy expressions, so that the expressions in
// apim_policies/ can be compiled (and run, in the tests) with Mono's C# compiler.
//
// Only the members the policies use, with the names and types of the policy expression reference
// (learn.microsoft.com/azure/api-management/api-management-policy-expressions#ContextVariables).
// A member missing here fails the compile check: add it with its documented type, never a guess.
using System;
using System.Collections.Generic;

namespace ApimStub
{
    public interface IProxyRequestContext
    {
        IApi Api { get; }
        IDeployment Deployment { get; }
        TimeSpan Elapsed { get; }
        ILastError LastError { get; }
        IOperation Operation { get; }
        IProduct Product { get; }
        IRequest Request { get; }
        Guid RequestId { get; }
        IResponse Response { get; }
        ISubscription Subscription { get; }
        DateTime Timestamp { get; }
        IReadOnlyDictionary<string, object> Variables { get; }
    }

    public interface IApi
    {
        string Id { get; }
    }

    public interface IDeployment
    {
        string Region { get; }
        string ServiceName { get; }
    }

    public interface ILastError
    {
        string Source { get; }
        string Reason { get; }
        string Section { get; }
    }

    public interface IOperation
    {
        string Id { get; }
    }

    public interface IProduct
    {
        string Id { get; }
        string Name { get; }
    }

    public interface ISubscription
    {
        string Id { get; }
        string Name { get; }
    }

    public interface IRequest
    {
        // null when the request has no body
        IMessageBody Body { get; }
        IReadOnlyDictionary<string, string[]> Headers { get; }
        string IpAddress { get; }
        string Method { get; }
        IUrl OriginalUrl { get; }
        IUrl Url { get; }
    }

    public interface IResponse
    {
        IMessageBody Body { get; }
        IReadOnlyDictionary<string, string[]> Headers { get; }
        int StatusCode { get; }
    }

    public interface IUrl
    {
        string Host { get; }
        string Path { get; }
        IReadOnlyDictionary<string, string[]> Query { get; }
    }

    public interface IMessageBody
    {
        // T: string, byte[], JObject, JToken, JArray, XNode, XElement, XDocument
        T As<T>(bool preserveContent = false);
    }

    public class Jwt
    {
        public Jwt(IReadOnlyDictionary<string, string[]> claims)
        {
            Claims = claims;
        }

        public IReadOnlyDictionary<string, string[]> Claims { get; private set; }
    }

    public static class ApimExtensions
    {
        // Headers, query parameters and JWT claims: comma-separated values, or defaultValue.
        public static string GetValueOrDefault(
            this IReadOnlyDictionary<string, string[]> values, string name, string defaultValue)
        {
            foreach (var pair in values)
            {
                if (string.Equals(pair.Key, name, StringComparison.OrdinalIgnoreCase))
                {
                    return string.Join(",", pair.Value);
                }
            }
            return defaultValue;
        }

        // context.Variables: the value cast to T (throws when it is another type), or defaultValue.
        public static T GetValueOrDefault<T>(
            this IReadOnlyDictionary<string, object> variables, string name, T defaultValue)
        {
            object value;
            return variables.TryGetValue(name, out value) ? (T)value : defaultValue;
        }

        // A Jwt when the input is a JWT (header.payload.signature, JSON payload), else null.
        public static Jwt AsJwt(this string input)
        {
            return JwtReader.Read(input);
        }
    }

    // Decodes the payload only, like APIM's AsJwt (which validates nothing either).
    internal static class JwtReader
    {
        internal static Jwt Read(string input)
        {
            if (string.IsNullOrEmpty(input))
            {
                return null;
            }
            string[] parts = input.Split('.');
            if (parts.Length != 3)
            {
                return null;
            }
            try
            {
                string payload = parts[1].Replace('-', '+').Replace('_', '/');
                payload = payload.PadRight(payload.Length + (4 - payload.Length % 4) % 4, '=');
                string json = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(payload));
                var document = Newtonsoft.Json.Linq.JObject.Parse(json);
                var claims = new Dictionary<string, string[]>();
                foreach (var claim in document.Properties())
                {
                    var value = claim.Value;
                    claims[claim.Name] = value.Type == Newtonsoft.Json.Linq.JTokenType.Array
                        ? System.Linq.Enumerable.ToArray(
                            System.Linq.Enumerable.Select(value.Children(), v => v.ToString()))
                        : new[] { value.ToString() };
                }
                return new Jwt(claims);
            }
            catch (Exception)
            {
                return null;
            }
        }
    }
}
